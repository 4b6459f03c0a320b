"""Routes: the admin site, the REST API under /api/v1/, and the API's schema and docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from coordinator.accounts import api as accounts_api
from coordinator.community import api as community_api
from coordinator.core import api as core_api
from coordinator.core import health, metrics, transfers
from coordinator.scheduler import api as scheduler_api
from coordinator.science import api as science_api
from coordinator.validation import api as validation_api
from coordinator.web import account_views, batch_views, boinc_views, client_views, science_views
from coordinator.web import views as web_views
from coordinator.web.signin import AdminSigninForm, SigninForm
from coordinator.work import api as work_api

admin.site.login_form = AdminSigninForm  # wrong passwords are limited per address

api_v1 = [
    path("project", core_api.ProjectView.as_view(), name="project"),
    path("notices", community_api.NoticeListView.as_view(), name="notices"),
    path("volunteers", accounts_api.SignupView.as_view(), name="volunteer-signup"),
    path("volunteers/token", accounts_api.TokenView.as_view(), name="volunteer-token"),
    path("hosts", accounts_api.HostRegisterView.as_view(), name="host-register"),
    path("scheduler", scheduler_api.SchedulerView.as_view(), name="scheduler"),
    path("replicas/<int:replica_id>/upload", scheduler_api.UploadPolicyView.as_view(), name="replica-upload"),
    path("objects/download", transfers.ObjectDownloadView.as_view(), name="object-download"),
    path("objects/upload", transfers.ObjectUploadView.as_view(), name="object-upload"),
    path(
        "app-versions/<int:version_id>/bundle",
        work_api.BundleDownloadView.as_view(),
        name="app-version-bundle",
    ),
    path(
        "leaderboards/volunteers",
        validation_api.VolunteerLeaderboardView.as_view(),
        name="leaderboard-volunteers",
    ),
    path("leaderboards/teams", validation_api.TeamLeaderboardView.as_view(), name="leaderboard-teams"),
    path("leaderboards/hosts", validation_api.HostLeaderboardView.as_view(), name="leaderboard-hosts"),
    path("batches", science_api.BatchListView.as_view(), name="batches"),
    path("batches/<int:batch_id>", science_api.BatchDetailView.as_view(), name="batch"),
    path("batches/<int:batch_id>/cancel", science_api.BatchCancelView.as_view(), name="batch-cancel"),
    path("batches/<int:batch_id>/result", science_api.BatchResultView.as_view(), name="batch-result"),
    path("batches/<int:batch_id>/failures", science_api.BatchFailuresView.as_view(), name="batch-failures"),
    path(
        "volunteers/<int:volunteer_id>/credit-history",
        validation_api.CreditHistoryView.as_view(),
        name="volunteer-credit-history",
    ),
]

urlpatterns = [
    path("", web_views.home, name="home"),
    path("status", web_views.status, name="status"),
    path("notices", web_views.notices, name="notices_page"),
    path("client", client_views.client_page, name="client"),
    path("client/<str:name>", client_views.client_wheel_file, name="client_wheel"),
    path("leaderboards/<str:board>", web_views.leaderboard, name="leaderboard"),
    path("batches/<int:batch_id>", batch_views.batch, name="batch_page"),
    path("batches/<int:batch_id>/picture.png", batch_views.batch_picture, name="batch_picture"),
    path("signup", account_views.signup, name="signup"),
    path(
        "signin",
        auth_views.LoginView.as_view(
            template_name="web/signin.html", authentication_form=SigninForm, extra_context={"nav": "account"}
        ),
        name="signin",
    ),
    path("signout", auth_views.LogoutView.as_view(), name="signout"),
    path("account", account_views.account, name="account"),
    path("account/boinc", boinc_views.boinc_access, name="account_boinc"),
    path("account/science", science_views.science, name="account_science"),
    path("account/data", account_views.account_data, name="account_data"),
    path("account/delete", account_views.account_delete, name="account_delete"),
    path("teams/new", account_views.team_new, name="team_new"),
    path("teams/leave", account_views.team_leave, name="team_leave"),
    path("teams/<int:team_id>", account_views.team, name="team"),
    path("teams/<int:team_id>/join", account_views.team_join, name="team_join"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("boinc/", include("coordinator.boinc.urls")),  # stock BOINC clients (docs/boinc.md)
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

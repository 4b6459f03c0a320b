"""BOINC's endpoints under one prefix: ``/boinc/`` is the master URL volunteers type."""

from django.urls import path

from coordinator.boinc import transfers, views

app_name = "boinc"
urlpatterns = [
    path("", views.master, name="master"),
    path("get_project_config.php", views.project_config, name="project-config"),
    path("lookup_account.php", views.lookup_account, name="lookup-account"),
    path("create_account.php", views.create_account, name="create-account"),
    path("cgi", views.scheduler_rpc, name="scheduler"),
    path("download/<str:name>", transfers.download, name="download"),
    path("file_upload_handler", transfers.file_upload_handler, name="upload"),
]

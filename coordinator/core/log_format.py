"""The one JSON log line format (LOG_FORMAT=json), shared by Django's logging settings and
gunicorn's config (deploy/gunicorn.conf.py), so application and access logs read alike.
No Django here: gunicorn reads this before any app is loaded."""

JSON_FORMATTER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
}

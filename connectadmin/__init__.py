"""Project wiring and the accounts side. The Celery app (connectadmin/celery.py) is loaded
when Django starts (ConnectadminConfig.ready), so shared tasks bind to it; `celery -A
connectadmin` finds it by itself."""

from api import create_app
from config import load_settings
from config.logs import configure_logging

configure_logging(load_settings().observability.log_format)
app = create_app()

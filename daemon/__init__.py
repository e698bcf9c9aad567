"""secretwarden: keeps an App Service's Graph client secret alive."""

__version__ = "0.1.0"

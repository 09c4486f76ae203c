from django.apps import AppConfig


class RiskConfig(AppConfig):
    name = "risk"
    verbose_name = "Risk"

    def ready(self) -> None:
        from tradingsite import db, refdata

        refdata.connect_signals()
        db.connect_signals()

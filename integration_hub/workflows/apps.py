from importlib import import_module

from django.apps import AppConfig

WORKFLOW_MODULES = ("customer_sync", "invoice_posting", "customer_onboarding", "usage_aggregation", "catalog",
                    "exchange_rates", "quote_to_cash", "subscription_amendments")


class WorkflowsConfig(AppConfig):
    name = "integration_hub.workflows"
    label = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        # Each workflow module registers its fact handlers and delivery actions.
        for module in WORKFLOW_MODULES:
            import_module(f"{self.name}.{module}")
        import_module(f"{self.name}.tasks")  # the pull's beat and API tasks

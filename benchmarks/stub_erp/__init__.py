"""ERP stand-ins for the benchmarks, registered like any vendor package: list
``benchmarks.stub_erp`` in ``HUB_CONNECTOR_PACKAGES`` of the bench worker."""

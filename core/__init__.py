"""Signal Stream core: settings, record contract, replay, queries and the backends behind the console."""

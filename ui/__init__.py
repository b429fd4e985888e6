"""The console's UI layer: cached access to settings, backend and query results for the pages."""

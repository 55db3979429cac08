-- The registry keeps its schemas in a database of its own, as the native stack does.
CREATE DATABASE shoal_registry;

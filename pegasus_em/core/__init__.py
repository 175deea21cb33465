"""The ensemble manager's core: states, the store of em.db, use cases, the engine, triggers and
notifications."""

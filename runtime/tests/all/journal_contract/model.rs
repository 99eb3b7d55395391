//! Model-based test: redb against the in-memory journal.

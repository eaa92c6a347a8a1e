//! Hot reload (being rewritten for Python-source plugins).

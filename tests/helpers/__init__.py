"""What the tests share: tiny random models, float64 references, app and terminal drivers."""

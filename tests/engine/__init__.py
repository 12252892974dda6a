"""The engine against float64 references and brute force, on tiny random models and the bundled one."""

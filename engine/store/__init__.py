"""What is kept on disk: the result cache, its location and keys, the user's collection, exports."""

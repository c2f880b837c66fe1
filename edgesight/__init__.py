"""edgesight command-line entry points (``edgesight serve | node | webapp``)."""

"""A thin HTTP server and web page over a recommender (the core library knows nothing of the web)."""

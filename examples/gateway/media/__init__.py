"""Media endpoints of the gateway: images, audio and async video jobs, priced from the catalog's ``media`` entries.

``catalog.py`` reads the price data, ``requests.py`` validates and quotes a request, ``upstream.py`` calls the
OpenAI-compatible upstreams with the pools' failover, ``routes.py`` serves it.
"""

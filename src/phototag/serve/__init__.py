"""``phototag serve``: the analyzers behind HTTP (phototag's own API, PhotoPrism, Immich, OpenAI, Ollama).

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, prometheus-client). Modules:

* :mod:`.engine`: the one analyzer runtime, dynamic batching (:mod:`.batching`), decoding (:mod:`.decode`);
* :mod:`.app`: the ASGI app, the guard around every request (auth, size, disconnect, metrics);
* :mod:`.security`: binding rules, API key, URL fetching without SSRF;
* :mod:`.errors`: the error tree and each client's error shape;
* :mod:`.own_api` and the client-compatible route families; :mod:`.commands`: the CLI.
"""

"""The web client: a browser chat app served at ``/app/``, built only on the public API."""

"""gunicorn's settings, read from the working directory by every
``gunicorn api.wsgi:app`` (``make run``, the image, compose).

gunicorn refuses an over-long request line or header itself, in plain text;
its limits sit above the app's (``api.inputs``), so that the app answers
first, as problem+json with a code. Beyond these, gunicorn's plain 400/414/431
remain (``limit_request_line`` can't go higher than 8190)."""

limit_request_line = 8190  # the app: URLs over 4096 bytes → 414 uri_too_long
limit_request_field_size = 16380  # the app: a header over 8192 bytes → 431 header_too_large
limit_request_fields = 200  # the app: more than 100 headers → 431 too_many_headers

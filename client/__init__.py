"""The ``emoq`` client: submit a folder of recordings as one batch, follow it,
fetch its results. Plain HTTP against the API (``EMOQ_URL``, ``EMOQ_API_KEY``);
it imports nothing of the service (no settings, database, torch or FunASR),
so ``emoq submit`` starts at once and runs on any machine."""

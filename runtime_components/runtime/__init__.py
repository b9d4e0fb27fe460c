"""The unified runtime's model downloader: ``aibrix-runtime download URI --dest DIR``.

Modules: ``cli`` (arguments, exit codes), ``download`` (lock, hit check, fetch, publish, evict),
``transfer`` (parallel ranged reads, resume journal, verification), ``sources/`` (S3 and GCS,
HTTP(S), OCI registries), ``publish`` (the temporary sibling and the atomic rename), ``cache``
(locks, last-used stamps, LRU eviction), ``unpack`` (tar and zip, safely), ``errors`` (the
exit-code hierarchy), ``progress``; ``local/`` holds the stand-ins its tests talk to.
"""

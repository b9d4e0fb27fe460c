"""Local stand-ins the downloader's tests and benchmark talk to: a real SeaweedFS S3 server
and a loopback tap (count, throttle or corrupt the bytes between the downloader and a server)."""

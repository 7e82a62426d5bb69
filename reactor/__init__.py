"""reactor: a production HTTP/1.1 server daemon in pure Python."""

__version__ = "0.1.0"

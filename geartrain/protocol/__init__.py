"""The Gearman protocol, sans-I/O: the packet table, the binary codec and the admin text protocol."""

from .codec import FATAL, PARSE_ERROR, TEXT, Parser, error_packet, pack, pack_req, pack_res
from .packets import PACKETS, REQ, RES, ErrorCode, T

__all__ = ["FATAL", "PACKETS", "PARSE_ERROR", "REQ", "RES", "TEXT", "ErrorCode", "Parser", "T", "error_packet",
           "pack", "pack_req", "pack_res"]

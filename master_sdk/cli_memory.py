"""``master memory``: vector collections from the shell.

master memory list                                  # every collection, stale ones marked
master memory search PRODUCT/COLLECTION "query" [-k 5] [--where JSON] [--format json]
master memory reembed PRODUCT/COLLECTION            # after its embedding model changed
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import master_sdk as ms

__all__ = ["add_memory_parser", "memory_command"]


def add_memory_parser(sub: Any) -> None:
    """The ``memory`` command and its actions, on the CLI's subparsers."""
    memory = sub.add_parser("memory", help="vector collections: list, search, reembed")
    actions = memory.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every collection: entries, model, stale or not")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    search = actions.add_parser("search", help="the entries most similar to QUERY")
    search.add_argument("ref", metavar="PRODUCT/COLLECTION")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-k", type=int, default=5, help="how many hits (default 5)")
    search.add_argument(
        "--where", metavar="JSON", help='a metadata filter, e.g. \'{"category": "billing"}\''
    )
    search.add_argument("--format", choices=["table", "json"], default="table")
    reembed = actions.add_parser(
        "reembed", help="embed a collection's texts again with its declared model"
    )
    reembed.add_argument("ref", metavar="PRODUCT/COLLECTION")


def memory_command(wb: ms.Workbench, args: argparse.Namespace) -> int:
    """Run ``master memory ACTION``; returns the exit code."""
    from master_sdk.errors import CollectionError

    action = args.memory_command
    if action == "list":
        frame = wb.collections()
        if args.format == "json":
            print(frame.to_json(orient="records"))
        elif frame.empty:
            print("no vector collections")
        else:
            print(frame.to_string(index=False))
        return 0
    collection = wb.memory(args.ref)
    if action == "reembed":
        count = collection.reembed()
        print(f"re-embedded {count} entr{'y' if count == 1 else 'ies'} of {args.ref}")
        return 0
    where = None
    if args.where is not None:
        try:
            where = json.loads(args.where)
        except json.JSONDecodeError as exc:
            raise CollectionError(
                f'--where: not JSON ({exc.msg}); e.g. \'{{"tag": "a"}}\''
            ) from None
        if not isinstance(where, dict):
            raise CollectionError("--where: give a JSON object of field conditions")
    hits = collection.search(args.query, k=args.k, where=where)
    frame = hits.frame()
    if args.format == "json":
        print(frame.to_json(orient="records"))
    elif frame.empty:
        print("no hits")
    else:
        print(frame.to_string(index=False))
    return 0

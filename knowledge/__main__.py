"""Command line: `python -m knowledge build | check | search`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from knowledge.articles import ArticleError
from knowledge.config import KnowledgeConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build or update the index (incremental; no-op when current)")
    build.add_argument("--force", action="store_true", help="re-embed every article")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("check", help="exit 1 when the index is missing or stale")
    search = commands.add_parser("search", help="search the current index")
    search.add_argument("query")
    search.add_argument("--language", choices=["zh", "en"], default=None)
    search.add_argument("--method", choices=["hybrid", "dense", "bm25"], default="hybrid")
    search.add_argument("-k", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = KnowledgeConfig.from_env()

    try:
        if args.command == "build":
            from knowledge.fusion import fit
            from knowledge.index import build as run_build

            report = run_build(config, force=args.force, show_progress=not args.quiet, fit=fit)
            if report.up_to_date:
                print(f"knowledge index {report.build_id} is up to date ({config.index_root / 'current'})")
            else:
                print(
                    f"knowledge index {report.build_id}: embedded {len(report.embedded)} articles, "
                    f"reused {len(report.reused)}, removed {len(report.removed)}; chunks {report.chunks}; "
                    f"{report.seconds} s"
                )
            return 0
        if args.command == "check":
            from knowledge.index import is_stale

            stale = is_stale(config)
            print("stale" if stale else "current")
            return 1 if stale else 0
        from common.language import detect_language
        from knowledge.retriever import ReloadingRetriever

        retriever = ReloadingRetriever(config, args.method).get()
        language = args.language or detect_language(args.query)
        hits = retriever.search(args.query, language, args.k)
        print(
            json.dumps(
                {
                    "language": language,
                    "confidence": round(retriever.confidence(hits, language), 4),
                    "thresholds": retriever.thresholds(language),
                    "hits": [
                        {
                            "article": h.article_id,
                            "title": h.title,
                            "score": round(h.score, 4),
                            "heading": h.heading,
                        }
                        for h in hits
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    except ArticleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

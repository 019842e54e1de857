"""Structured logs: ``--log-format json`` gives one JSON object per line."""

from __future__ import annotations

import json
import logging

from protocols.wire.logs import configure_logging


def test_json_lines_carry_time_level_logger_message_and_the_exception_type(capsys):
    configure_logging(logging.INFO, "json")
    try:
        logging.getLogger("node.runner").info("job %s: running attempt %d", 7, 2)
        try:
            raise ValueError("a row value that must stay out of the log line's message")
        except ValueError:
            logging.getLogger("node.runner").warning("job 7 failed", exc_info=True)
        logging.getLogger("node.runner").debug("not at INFO")
    finally:
        configure_logging(logging.WARNING)

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("INFO", "node.runner", "job 7: running attempt 2"), ("WARNING", "node.runner", "job 7 failed")]
    assert lines[1]["exc_type"] == "ValueError" and "traceback" not in lines[1]
    assert all(r["ts"].endswith("+00:00") for r in lines)


def test_text_is_the_default(capsys):
    configure_logging(logging.INFO)
    try:
        logging.getLogger("coordinator").info("serving")
    finally:
        configure_logging(logging.WARNING)

    assert capsys.readouterr().err.rstrip().endswith("INFO coordinator: serving")

"""Credentials are masked in any text and in every log record, whatever logger or level wrote it; a
read error keeps its parts across a process boundary."""

from __future__ import annotations

import base64
import logging
import pickle

from data_catalog.catalog import StoreRef
from data_catalog.errors import DataError
from data_catalog.redaction import MASK, install_log_redaction, option_secrets, redact

URL_SECRET, KEY_SECRET, HEADER_SECRET = "pw-9a7c1e55", "AKIA-key-3b8d", "Bearer tok-51f0aa"


def test_store_secrets_are_masked_in_any_text():
    StoreRef(urlpath=f"https://reader:{URL_SECRET}@host/run.zarr",
             storage_options={"key": KEY_SECRET, "region": "us-east-1",
                              "client_kwargs": {"headers": {"Authorization": HEADER_SECRET}}})
    basic = base64.b64encode(f"reader:{URL_SECRET}".encode()).decode()
    text = (f"GET https://reader:{URL_SECRET}@host/run.zarr/a/c/0 key={KEY_SECRET} {HEADER_SECRET} "
            f"headers={{'Authorization': 'Basic {basic}'}} bare {URL_SECRET}")
    clean = redact(text)
    for secret in (URL_SECRET, KEY_SECRET, HEADER_SECRET, basic):
        assert secret not in clean, secret
    assert "https://***@host/run.zarr/a/c/0" in clean and clean.count(MASK) >= 5


def test_only_values_under_secret_keys_are_secrets():
    options = {"anon": False, "region": "eu-west-1", "secret": "s-1", "nested": [{"api_key": "k-2"}],
               "headers": {"X-Session-Token": "t-3", "Accept": "*/*"}}
    assert sorted(option_secrets(options)) == ["k-2", "s-1", "t-3"]


def test_every_log_record_is_redacted_at_every_level(caplog):
    install_log_redaction()
    StoreRef(urlpath="/data/run.zarr", storage_options={"token": KEY_SECRET})
    logger = logging.getLogger("fsspec.http")          # a third-party logger that writes full URLs at DEBUG
    with caplog.at_level(logging.DEBUG):
        logger.debug("fetch %s with %s", f"http://u:{URL_SECRET}@h/x", {"token": KEY_SECRET})
        try:
            raise OSError(f"refused https://u:{URL_SECRET}@h/y")
        except OSError:
            logger.error("read failed", exc_info=True)
    assert caplog.records and URL_SECRET not in caplog.text and KEY_SECRET not in caplog.text
    assert "http://***@h/x" in caplog.text and "https://***@h/y" in caplog.text


def test_a_data_error_survives_pickling_with_its_parts():
    err = pickle.loads(pickle.dumps(DataError("s3://***@b/run.zarr", "corrupt chunk", "PRATEsfc")))
    assert (err.store, err.problem, err.variable) == ("s3://***@b/run.zarr", "corrupt chunk", "PRATEsfc")
    assert str(err) == "store 's3://***@b/run.zarr': variable 'PRATEsfc': corrupt chunk"

"""Catalog files: the native form, fv3net's intake-v1 form, clear errors, and no credential leaks."""

from __future__ import annotations

import logging

import pytest
import yaml
from builders import catalog_file, member_pair

from data_catalog.catalog import StoreRef, load_catalog
from data_catalog.errors import CatalogError, DataError
from data_catalog.member_reader import open_member
from data_catalog.store_reader import open_store

SECRET = "s3cr3t-t0ken-value"


def test_native_catalog_resolves_relative_paths(tmp_path):
    (tmp_path / "cat.yaml").write_text(yaml.safe_dump({
        "resolution": {"coarse": 12, "fine": 96},
        "members": {"0001": {"fine": {"urlpath": "members/0001/fine.zarr"},
                             "coarse": {"urlpath": "gs://bucket/0001/coarse.zarr", "storage_options": {"token": SECRET}}}},
    }))
    cat = load_catalog(tmp_path / "cat.yaml")
    assert cat.resolution.factor == 8
    assert cat.members["0001"].fine.urlpath == str(tmp_path / "members/0001/fine.zarr")
    assert cat.members["0001"].coarse[0].urlpath == "gs://bucket/0001/coarse.zarr"  # URLs untouched
    assert cat.predictors[0] == "PRATEsfc_coarse"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"resolution": {"coarse": 12, "fine": 100}, "members": {"a": {"fine": {"urlpath": "x"}}}},
         "fine resolution C100 must be an integer multiple"),
        ({"resolution": {"coarse": 12, "fine": 96}, "members": {}}, "members: Value error, the catalog lists no members"),
        ({"resolution": {"coarse": 12, "fine": 96}, "members": {"a": {}}}, "members.a: Value error, a member needs"),
        ({"resolution": {"coarse": 12, "fine": 96}, "members": {"a": {"fine": {"url": "x"}}}}, "members.a.fine.urlpath: Field required"),
        ({"resolution": {"coarse": 12, "fine": 96}, "members": {"a": {"fine": {"urlpath": "x"}}}, "predictors": []},
         "at least one coarse predictor"),
    ],
)
def test_invalid_catalogs_name_the_file_and_the_field(tmp_path, doc, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_unreadable_and_non_yaml_catalogs(tmp_path):
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_text("a: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(tmp_path / "x.yaml")


def test_credentials_never_shown(tmp_path, caplog):
    ref = StoreRef(urlpath=f"s3://user:{SECRET}@bucket/missing.zarr", storage_options={"key": SECRET, "secret": SECRET})
    assert SECRET not in repr(ref) and SECRET not in str(ref) and SECRET not in ref.display
    assert "s3://***@bucket/missing.zarr" in ref.display
    with caplog.at_level(logging.DEBUG), pytest.raises(DataError) as err:
        open_store(ref)
    assert SECRET not in str(err.value)
    assert SECRET not in caplog.text
    cat_path = tmp_path / "cat.yaml"
    cat_path.write_text(yaml.safe_dump({
        "resolution": {"coarse": 4, "fine": 8},
        "members": {"0001": {"coarse": {"urlpath": str(tmp_path / "nothing.zarr"), "storage_options": {"token": SECRET}}}},
    }))
    cat = load_catalog(cat_path)
    assert SECRET not in repr(cat)
    with pytest.raises(DataError) as err:
        open_member(cat, "0001")
    assert SECRET not in str(err.value)


def test_intake_v1_catalog_reads_as_is(tmp_path):
    stores = member_pair(tmp_path)
    doc = {
        "metadata": {"version": 1, "predictors": ["PRATEsfc_coarse", "TMPsfc_coarse"]},
        "sources": {
            "c8_precip": {"description": "fine", "driver": "zarr",
                          "args": {"urlpath": str(stores["fine"]), "consolidated": True},
                          "metadata": {"grid": "c8", "simulation": "unperturbed", "category": "2d"}},
            "c4_sfc_8xdaily_ave_coarse": {"driver": "zarr",
                                          "args": {"urlpath": str(stores["coarse"]), "consolidated": True,
                                                   "storage_options": {"project": "vcm-ml"}},
                                          "metadata": {"grid": "c4", "simulation": "unperturbed", "category": "2d"}},
            "40day_c48_unrelated": {"driver": "zarr", "args": {"urlpath": "gs://x/y.zarr"},
                                    "metadata": {"grid": "c48", "category": "2d"}},
        },
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    # c48 is the largest grid named; resolution must then be given explicitly
    doc["metadata"]["resolution"] = {"coarse": 4, "fine": 8}
    path.write_text(yaml.safe_dump(doc))
    cat = load_catalog(path)
    assert cat.resolution.factor == 2
    assert cat.members["0000"].fine.name == "c8_precip"
    assert [c.name for c in cat.members["0000"].coarse] == ["c4_sfc_8xdaily_ave_coarse"]
    m = open_member(cat, "0000")
    assert m.fine["PRATEsfc"].shape == (6, 6, 8, 8)


def test_intake_roles_and_members_from_metadata(tmp_path):
    stores = member_pair(tmp_path)
    sources = {
        f"{role}_{member}": {"driver": "zarr", "args": {"urlpath": str(stores[role])},
                             "metadata": {"role": role, "member": member}}
        for role in ("fine", "coarse") for member in ("0001", "0002")
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"metadata": {"resolution": {"coarse": 4, "fine": 8}}, "sources": sources}))
    assert sorted(load_catalog(path).members) == ["0001", "0002"]


def test_intake_without_resolution_is_explained(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"sources": {"a": {"driver": "zarr", "args": {"urlpath": "x"}}}}))
    with pytest.raises(CatalogError, match="cannot tell the coarse and fine resolutions"):
        load_catalog(path)


def test_unknown_member(tmp_path):
    cat = load_catalog(catalog_file(tmp_path, member_pair(tmp_path)))
    with pytest.raises(CatalogError, match="has no member '0042' \\(members: 0001\\)"):
        cat.member("0042")


def test_intake_errors_name_the_source_and_the_field(tmp_path):
    """An intake file meets the native form's checks: the bad field is named by its place in the catalog."""
    resolution = {"metadata": {"resolution": {"coarse": 4, "fine": 8}}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({**resolution, "sources": {
        "run": {"driver": "zarr", "args": {"urlpath": " "}, "metadata": {"role": "fine", "member": "0001"}}}}))
    with pytest.raises(CatalogError, match=r"members\.0001\.fine\.urlpath: Value error, urlpath is empty"):
        load_catalog(path)
    path.write_text(yaml.safe_dump({**resolution, "sources": {
        "run": {"driver": "zarr", "args": {"urlpath": "x.zarr"}, "metadata": {"role": "truth"}}}}))
    with pytest.raises(CatalogError, match=f"catalog {path}: source 'run': unknown role 'truth'"):
        load_catalog(path)

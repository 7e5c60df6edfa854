"""The regions the evaluation scores and the report zooms on: one set of named boxes, one definition each.

Lat in degrees north, lon in degrees east on [0, 360); bounds inclusive below, exclusive above
(:class:`~downscale.diagnostics.weights.Region` draws the mask):

* ``global``; ``tropics`` |lat| < 23.5; ``extratropics`` |lat| ≥ 23.5;
* ``california`` 32–42 N, 235–246 E (125–114 W); ``himalayas`` 26–36 N, 75–95 E — the STVD paper's two
  case studies (:data:`CASE_STUDIES`): the regions of the GPD return levels and of the report's zoom maps.

The report's zoom maps show a region's box with a margin around it (:func:`downscale.plots.globe.zoom_window`),
and the box itself dashed: what is drawn is what is averaged.

Example::

    >>> w = region_weights(grid.area, grid.lat, grid.lon, get_region("california"))
"""

from __future__ import annotations

from downscale.diagnostics.weights import Region

TROPIC_LATITUDE = 23.5

REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region("global"),
        Region("tropics", 0.0, TROPIC_LATITUDE, abs_lat=True),
        Region("extratropics", TROPIC_LATITUDE, 90.0, abs_lat=True),
        Region("california", 32.0, 42.0, 235.0, 246.0),
        Region("himalayas", 26.0, 36.0, 75.0, 95.0),
    )
}
DEFAULT_REGIONS = tuple(REGIONS)
#: The case studies: the regions of the GPD return levels of daily totals and of the report's zoom maps.
CASE_STUDIES = ("california", "himalayas")


def get_region(region: str | Region) -> Region:
    """The :class:`Region` named ``region`` (a ``Region`` is returned as it is); ``ValueError`` naming the known
    regions otherwise."""
    if isinstance(region, Region):
        return region
    try:
        return REGIONS[region]
    except KeyError:
        raise ValueError(f"unknown region {region!r}: use one of {sorted(REGIONS)} or a Region") from None


def get_regions(regions: tuple[str | Region, ...] | list[str | Region]) -> list[Region]:
    """:func:`get_region` of each."""
    return [get_region(r) for r in regions]

"""Data layer: catalogs, readers, validation, cube-sphere geometry, coarse-graining, synthetic data, clips."""

import warnings

# Consolidated metadata is how FV3GFS stores are published (and what makes remote opens fast);
# zarr-python 3 warns that it is not yet in the v3 spec on every open. Once is enough.
warnings.filterwarnings("once", message="Consolidated metadata is currently not part", category=UserWarning)

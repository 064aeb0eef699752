-- Pairs of images whose perceptual hashes differ in at most near_duplicate_max_distance bits
-- (exact duplicates have distance 0). Not all pairs are compared: the 64-bit hash is cut into
-- d + 1 bands, and two hashes within distance d agree on at least one band (pigeonhole), so
-- only images sharing a band value are compared.
{% set max_distance = int_var('near_duplicate_max_distance', min=0, max=64) %}
{% set n_bands = max_distance + 1 %}
{% set band_bits = ((64 + n_bands - 1) // n_bands) %}
with banded as (
    select path, phash, band, (phash >> (band * {{ band_bits }})) & {{ 2 ** band_bits - 1 }} as band_value
    from {{ ref('image_features') }}
    lateral view explode(sequence(0, {{ n_bands - 1 }})) bands as band
),
candidates as (
    select distinct a.path as path_a, b.path as path_b, a.phash as phash_a, b.phash as phash_b
    from banded a
    join banded b on a.band = b.band and a.band_value = b.band_value and a.path < b.path
)
select path_a, path_b, hamming(phash_a, phash_b) as distance
from candidates
where hamming(phash_a, phash_b) <= {{ max_distance }}

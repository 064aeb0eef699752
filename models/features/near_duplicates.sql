-- Pairs of images whose perceptual hashes differ in at most near_duplicate_max_distance bits
-- (exact duplicates have distance 0), path_a < path_b. Not all pairs are compared: the 64-bit
-- hash is cut into d + 1 bands, and two hashes within distance d agree on at least one band
-- (pigeonhole), so only images sharing a band value are compared.
-- Incremental: only images new or changed in image_features are compared (with every image),
-- so a build costs what arrived, not the table. A pair keeps the content_sha256 of both images
-- (sha_a, sha_b): a pair whose image is gone or changed is deleted first, and the changed
-- image's pairs, if it still has any, come back with it.
{% set max_distance = int_var('near_duplicate_max_distance', min=0, max=64) %}
{% set n_bands = max_distance + 1 %}
{% set band_bits = ((64 + n_bands - 1) // n_bands) %}
{% set band_mask = 2 ** band_bits - 1 if band_bits < 64 else -1 %}{# 2^64 - 1 is no bigint: all bits #}
{% set image_features = ref('image_features') %}
{{ config(
    materialized='incremental', unique_key=['path_a', 'path_b'], incremental_strategy='merge',
    delete_unmatched=[{'in': image_features, 'on': {'path_a': 'path', 'sha_a': 'content_sha256'}},
                      {'in': image_features, 'on': {'path_b': 'path', 'sha_b': 'content_sha256'}}]
) }}
with all_images as (
    select named_struct('path', path, 'content_sha256', content_sha256, 'phash', phash) as image, band,
           (phash >> (band * {{ band_bits }})) & {{ band_mask }} as band_value
    from {{ image_features }}
    lateral view explode(sequence(0, {{ n_bands - 1 }})) bands as band
),
new_images as (
    -- a first build (or --full-refresh): every image; an incremental one: the images written to
    -- image_features since this table read it (and any rows of a file image_features rewrote,
    -- whose pairs are found again, unchanged)
    select named_struct('path', path, 'content_sha256', content_sha256, 'phash', phash) as image, band,
           (phash >> (band * {{ band_bits }})) & {{ band_mask }} as band_value
    from {{ new_rows(image_features) }}
    lateral view explode(sequence(0, {{ n_bands - 1 }})) bands as band
),
candidates as (
    -- each pair once, the smaller path first (structs compare by their first field, the path),
    -- whichever side is new; a pair of two new images is found from both sides
    select distinct least(n.image, o.image) as a, greatest(n.image, o.image) as b
    from new_images n
    join all_images o
        on n.band = o.band and n.band_value = o.band_value
        and n.image.path {% if is_incremental() %}<>{% else %}<{% endif %} o.image.path
    where hamming(n.image.phash, o.image.phash) <= {{ max_distance }}
)
select a.path as path_a, b.path as path_b, hamming(a.phash, b.phash) as distance,
       a.content_sha256 as sha_a, b.content_sha256 as sha_b
from candidates

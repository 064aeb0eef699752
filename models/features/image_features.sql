-- Hand-crafted features of the resized image (what the model sees): colour histogram (counts),
-- channel statistics, and a perceptual hash for near-duplicate search. images_resized computes
-- them in the call that decodes each file; this narrow table is what analysts and
-- near_duplicates scan, without reading the pixels.
-- Incremental: only images that are new or changed in images_resized are read.
{{ config(
    materialized='incremental', unique_key='path', incremental_strategy='merge',
    delete_unmatched=image_is_gone()
) }}
select
    r.path,
    r.content_sha256,
    r.color_histogram,
    r.image_stats,
    r.phash
from {{ new_rows(ref('images_resized')) }} r
{{ only_new_images('r') }}

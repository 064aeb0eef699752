-- Hand-crafted features of the resized image (what the model sees): colour histogram, channel
-- statistics, and a perceptual hash for near-duplicate search.
-- Incremental: only images that are new or changed in images_resized are read and computed.
{{ config(
    materialized='incremental', unique_key='path', incremental_strategy='merge',
    delete_where=image_is_gone()
) }}
select
    r.path,
    r.content_sha256,
    color_histogram(r.image, {{ var('histogram_bins') }}) as color_histogram,
    image_stats(r.image) as image_stats,
    phash(r.image) as phash
from {{ new_rows(ref('images_resized')) }} r
{{ only_new_images('r') }}

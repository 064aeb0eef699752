-- Every usable image at image_size x image_size, by resize_mode (cover: shorter side to size,
-- centre crop), RGB, EXIF orientation applied. Each file is decoded once, here, straight to
-- the size every later stage uses (JPEG draft decoding); width and height are the original's.
-- The same call gives the per-image features (colour histogram, channel statistics, pHash),
-- so no later model sends these pixels back to Python for them.
--
-- Incremental: a build reads and decodes only the files that are new or changed (size or
-- modification time: new_rows of the folder gives only those, so no anti-join on this table is
-- needed); the rows of files that were deleted or changed are removed.
{%- set image_size = int_var('image_size', min=1) %}
{%- set resize_mode = choice_var('resize_mode', ['stretch', 'fit', 'cover'], ignore_case=true) %}
{%- set interpolation = choice_var('interpolation', ['nearest', 'bilinear', 'bicubic', 'lanczos'], ignore_case=true) %}
{%- set histogram_bins = int_var('histogram_bins', min=1, max=256) %}
{{ config(
    materialized='incremental', unique_key='path', incremental_strategy='merge',
    delete_unmatched={'in': ref('stg_files'), 'on': ['path', 'size_bytes', 'modified_at', 'content_sha256']}
) }}
with new_files as (
    select f.path, f.label, f.size_bytes, f.modified_at, f.content_sha256
    from {{ ref('stg_files') }} f
)
select
    n.path,
    n.label,
    n.size_bytes,
    n.modified_at,
    n.content_sha256,
    p.width,
    p.height,
    p.image,
    p.histogram as color_histogram,
    p.image_stats,
    p.phash
from new_files n
join {{ new_rows(source('raw', 'images')) }} s on s.path = n.path
-- A generator keeps the filter on p.error above the one call per file (a plain subquery's
-- filter would be pushed below it and call the function twice).
lateral view inline(array(
    prepare_image(s.content, s.path, {{ image_size }}, {{ image_size }},
                  '{{ resize_mode }}', '{{ interpolation }}', null, {{ histogram_bins }})
)) p
where p.error is null

-- augment_copies augmented versions of each training image (copy_index 1..K; 0 is the
-- original in train_set), each with its colour histogram, made in the same call. Every random
-- choice comes from the seed, the path below images_path and the copy index, so a rebuild or a
-- retried Spark task gives the same bytes, and so does the same set of images in another folder.
-- Incremental: only training images that are new (or changed) are read and get copies; copies
-- of images that left the training split are removed, and those of a changed image replaced. An image keeps its split, so
-- after `--full-refresh` of splits alone, refresh this model too (`--select splits+`).
{%- set augment_ops = string_var('augment_ops') %}
{%- set seed = int_var('seed') %}
{%- set augment_copies = int_var('augment_copies', min=0, max=1000) %}
{%- set histogram_bins = int_var('histogram_bins', min=1, max=256) %}
{{ config(
    materialized='incremental', unique_key=['path', 'copy_index'], incremental_strategy='merge',
    delete_unmatched={'in': ref('splits'), 'on': ['path'], 'where': {'split': 'train'}}
) }}
select
    r.path,
    r.content_sha256,
    cast(c.pos + 1 as int) as copy_index,
    c.copy.image,
    c.copy.histogram as color_histogram
from {{ new_rows(ref('images_resized')) }} r
join {{ ref('splits') }} s on s.path = r.path and s.split = 'train'
join {{ ref('stg_files') }} f on f.path = r.path
{{ only_new_images('r') }}
lateral view posexplode(
    prepare_augmented(r.image, '{{ augment_ops }}', {{ seed }}, {{ augment_copies }},
                      f.relative_path, {{ histogram_bins }})
) c as pos, copy

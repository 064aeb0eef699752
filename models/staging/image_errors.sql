-- One row per file under images_path that could not be used, with the reason: the files that
-- did not decode into images_resized. Only these files are decoded again, to say why. Files that
-- were not read at all (too large, not a regular file, unreadable) carry the listing's reason
-- and no content_sha256, hence the NULL-safe comparisons.
--
-- Incremental: a build looks only at files that are new or changed; the rows of files that
-- were deleted or changed since are removed first.
{{ config(
    materialized='incremental', unique_key='path', incremental_strategy='merge',
    delete_unmatched={'in': ref('stg_files'), 'on': ['path', 'content_sha256', 'modified_at']}
) }}
select
    f.path,
    f.relative_path,
    f.label,
    f.size_bytes,
    f.modified_at,
    f.content_sha256,
    coalesce(s.read_error, image_error(s.content, s.path)) as reason
from {{ ref('stg_files') }} f
left anti join {{ ref('images_resized') }} i on i.path = f.path and i.content_sha256 <=> f.content_sha256
join {{ new_rows(source('raw', 'images')) }} s on s.path = f.path
{%- if is_incremental() %}
left anti join {{ this }} t
    on t.path = f.path and t.content_sha256 <=> f.content_sha256 and t.modified_at = f.modified_at
{%- endif %}

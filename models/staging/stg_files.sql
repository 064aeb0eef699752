-- Every file under images_path, one row each, with what tells a changed file apart: size,
-- modification time and a SHA-256 of the bytes (equal hashes are exact duplicates).
--
-- Incremental: a build reads and hashes only the files that are new or changed (new size or
-- modification time); the rows of files that were deleted or changed are removed first.
{{ config(
    materialized='incremental', unique_key='path', incremental_strategy='merge',
    delete_unmatched={'in': source('raw', 'images'),
                      'on': {'path': 'path', 'size_bytes': 'length', 'modified_at': 'modificationTime'}}
) }}
select
    f.path,
    f.relative_path,
    {{ label_from_path('f.relative_path') }} as label,
    f.length as size_bytes,
    f.modificationTime as modified_at,
    sha2(f.content, 256) as content_sha256
from {{ new_rows(source('raw', 'images')) }} f
{%- if is_incremental() %}
left anti join {{ this }} t
    on t.path = f.path and t.size_bytes = f.length and t.modified_at = f.modificationTime
{%- endif %}

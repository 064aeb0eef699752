-- Every file under images_path, one row each, with what tells a changed file apart: size,
-- modification time and a SHA-256 of the bytes (equal hashes are exact duplicates).
select
    path,
    relative_path,
    {{ label_from_path('relative_path') }} as label,
    length as size_bytes,
    modificationTime as modified_at,
    sha2(content, 256) as content_sha256
from {{ source('raw', 'images') }}

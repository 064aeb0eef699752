-- Nothing is lost and nothing is stale: each file of the source is in stg_images or
-- image_errors, and not both; neither holds a file that is no longer there.
with accounted as (
    select path, 'stg_images' as tbl from {{ ref('stg_images') }}
    union all
    select path, 'image_errors' as tbl from {{ ref('image_errors') }}
)
select coalesce(f.path, a.path) as path,
       collect_list(a.tbl) as found_in,
       max(f.path is not null) as in_source
from {{ source('raw', 'images') }} f
full outer join accounted a on a.path = f.path
group by coalesce(f.path, a.path)
having count(a.tbl) <> 1 or not max(f.path is not null)

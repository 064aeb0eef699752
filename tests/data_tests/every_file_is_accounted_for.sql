-- Nothing is lost and nothing is stale: each file of the source is in stg_images or
-- image_errors, and not both; neither holds a file that is no longer there.
-- (One grouping of the three lists of paths: a full outer join and then a grouping cost Spark
-- a shuffle more.)
with entries as (
    select path, cast(null as string) as tbl from {{ source('raw', 'images') }}
    union all
    select path, 'stg_images' as tbl from {{ ref('stg_images') }}
    union all
    select path, 'image_errors' as tbl from {{ ref('image_errors') }}
)
select path,
       collect_list(tbl) as found_in,
       max(tbl is null) as in_source
from entries
group by path
having count(tbl) <> 1 or not max(tbl is null)

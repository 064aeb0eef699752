-- Labels with a stable index: 0..n-1 in label-name order, so indices do not move when
-- images are added (only a new label can shift the ones after it). This is Spark ML's
-- StringIndexer with stringOrderType='alphabetAsc', not its default (frequencyDesc).
select
    label,
    cast(row_number() over (order by label) - 1 as int) as label_index,
    count_images as n_images
from (
    select label, count(*) as count_images
    from {{ ref('stg_images') }}
    where label is not null
    group by label
)

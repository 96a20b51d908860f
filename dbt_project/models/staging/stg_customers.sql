{{ config(materialized='incremental', incremental_strategy='replace_window', unique_key='signup_date',
          tags=['daily']) }}

select
    cast(customer_id as bigint) as customer_id,
    name as customer_name,
    lower(email) as email,
    upper(country) as country,
    cast(signup_date as date) as signup_date
from {{ source('raw', 'raw_customers') }}
where {{ partition_filter('signup_date') }}

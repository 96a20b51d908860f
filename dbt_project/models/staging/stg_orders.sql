{{ config(materialized='incremental', incremental_strategy='replace_window', unique_key='order_date',
          tags=['daily']) }}

-- Built after stg_customers so its relationships test never sees a half-loaded parent:
-- depends_on: {{ ref('stg_customers') }}

select
    cast(order_id as bigint) as order_id,
    cast(customer_id as bigint) as customer_id,
    cast(order_date as date) as order_date,
    cast(ordered_at as timestamp) as ordered_at,
    lower(status) as status,
    cast(amount as decimal(12, 2)) as amount
from {{ source('raw', 'raw_orders') }}
where {{ partition_filter('order_date') }}

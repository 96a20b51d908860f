{{ config(materialized='incremental', incremental_strategy='replace_window', unique_key='payment_date',
          tags=['daily']) }}

-- Built after stg_orders so its relationships test never sees a half-loaded parent:
-- depends_on: {{ ref('stg_orders') }}

select
    cast(payment_id as bigint) as payment_id,
    cast(order_id as bigint) as order_id,
    cast(payment_date as date) as payment_date,
    lower(method) as payment_method,
    cast(amount as decimal(12, 2)) as amount
from {{ source('raw', 'raw_payments') }}
where {{ partition_filter('payment_date') }}

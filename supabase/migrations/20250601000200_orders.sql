-- Orders and their items, with the status lifecycle enforced in the database:
--   received -> processing -> ready -> delivered
--   received | processing | ready -> cancelled
-- delivered and cancelled are final. Every change is kept in order_status_events.

create type public.order_status as enum ('received', 'processing', 'ready', 'delivered', 'cancelled');

create table public.orders (
  id             uuid primary key default gen_random_uuid(),
  tenant_id      uuid not null references public.tenants (id) on delete cascade,
  branch_id      uuid not null,
  customer_id    uuid not null,
  price_list_id  uuid,
  created_by     uuid,
  order_number   text not null check (length(btrim(order_number)) > 0),
  status         public.order_status not null default 'received',
  currency       char(3) not null check (currency ~ '^[A-Z]{3}$'),
  total_amount   numeric(12, 2) not null default 0 check (total_amount >= 0),
  notes          text,
  promised_at    timestamptz,
  received_at    timestamptz not null default now(),
  ready_at       timestamptz,
  delivered_at   timestamptz,
  cancelled_at   timestamptz,
  cancel_reason  text,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  unique (tenant_id, order_number),
  unique (tenant_id, id),
  foreign key (tenant_id, branch_id) references public.branches (tenant_id, id)
    deferrable initially deferred,
  foreign key (tenant_id, customer_id) references public.customers (tenant_id, id)
    deferrable initially deferred,
  foreign key (tenant_id, price_list_id) references public.price_lists (tenant_id, id)
    deferrable initially deferred,
  foreign key (tenant_id, created_by) references public.users (tenant_id, id)
    deferrable initially deferred,
  -- The timestamps must agree with the status.
  check ((status = 'delivered') = (delivered_at is not null)),
  check ((status = 'cancelled') = (cancelled_at is not null)),
  check (status not in ('ready', 'delivered') or ready_at is not null)
);

create index orders_tenant_status_idx on public.orders (tenant_id, status);
create index orders_branch_received_idx on public.orders (tenant_id, branch_id, received_at desc);
create index orders_customer_idx on public.orders (tenant_id, customer_id);

create table public.order_items (
  id           uuid primary key default gen_random_uuid(),
  tenant_id    uuid not null,
  order_id     uuid not null,
  service_id   uuid not null,
  description  text,
  quantity     numeric(10, 3) not null check (quantity > 0),
  unit_price   numeric(12, 2) not null check (unit_price >= 0),
  line_total   numeric(12, 2) generated always as (round(quantity * unit_price, 2)) stored,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  foreign key (tenant_id, order_id) references public.orders (tenant_id, id) on delete cascade,
  foreign key (tenant_id, service_id) references public.services (tenant_id, id)
    deferrable initially deferred
);

create index order_items_order_idx on public.order_items (tenant_id, order_id);
create index order_items_service_idx on public.order_items (tenant_id, service_id);

create table public.order_status_events (
  id           bigint generated always as identity primary key,
  tenant_id    uuid not null,
  order_id     uuid not null,
  from_status  public.order_status,
  to_status    public.order_status not null,
  changed_at   timestamptz not null default now(),
  foreign key (tenant_id, order_id) references public.orders (tenant_id, id) on delete cascade
);

create index order_status_events_order_idx on public.order_status_events (tenant_id, order_id, changed_at);

-- Legal transitions; the one place that defines the lifecycle.
create or replace function public.order_status_transition_allowed(
  from_status public.order_status,
  to_status public.order_status
) returns boolean
language sql
immutable
set search_path = ''
as $$
  select (from_status, to_status) in (
    ('received'::public.order_status, 'processing'::public.order_status),
    ('processing', 'ready'),
    ('ready', 'delivered'),
    ('received', 'cancelled'),
    ('processing', 'cancelled'),
    ('ready', 'cancelled')
  );
$$;

-- Rejects illegal status changes and stamps the matching timestamp.
create or replace function public.orders_enforce_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and new.status is distinct from old.status then
    if not public.order_status_transition_allowed(old.status, new.status) then
      raise exception 'order %: illegal status change % -> %', old.order_number, old.status, new.status
        using errcode = 'check_violation';
    end if;
  end if;
  -- On insert (imports, seed data) any status is accepted; its timestamps are filled in.
  if new.status in ('ready', 'delivered') and new.ready_at is null then
    new.ready_at := now();
  end if;
  if new.status = 'delivered' and new.delivered_at is null then
    new.delivered_at := now();
  end if;
  if new.status = 'cancelled' and new.cancelled_at is null then
    new.cancelled_at := now();
  end if;
  return new;
end;
$$;

create or replace function public.orders_record_status_event()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' or new.status is distinct from old.status then
    insert into public.order_status_events (tenant_id, order_id, from_status, to_status)
    values (new.tenant_id, new.id, case when tg_op = 'UPDATE' then old.status end, new.status);
  end if;
  return null;
end;
$$;

-- Keeps orders.total_amount equal to the sum of its items.
create or replace function public.order_items_refresh_total()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  affected_order uuid := coalesce(new.order_id, old.order_id);
begin
  update public.orders o
     set total_amount = coalesce((select sum(i.line_total) from public.order_items i where i.order_id = o.id), 0)
   where o.id = affected_order;
  if tg_op = 'UPDATE' and new.order_id is distinct from old.order_id then
    update public.orders o
       set total_amount = coalesce((select sum(i.line_total) from public.order_items i where i.order_id = o.id), 0)
     where o.id = old.order_id;
  end if;
  return null;
end;
$$;

create trigger orders_enforce_status before insert or update of status on public.orders
  for each row execute function public.orders_enforce_status();
create trigger orders_record_status_event after insert or update of status on public.orders
  for each row execute function public.orders_record_status_event();
create trigger order_items_refresh_total after insert or update or delete on public.order_items
  for each row execute function public.order_items_refresh_total();

create trigger orders_set_updated_at before update on public.orders
  for each row execute function public.set_updated_at();
create trigger order_items_set_updated_at before update on public.order_items
  for each row execute function public.set_updated_at();

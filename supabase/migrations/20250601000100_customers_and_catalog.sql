-- Customers, the services a tenant sells and what they cost (price lists, tenant-wide or per branch).

create type public.pricing_unit as enum ('item', 'kg', 'set');

create table public.customers (
  id          uuid primary key default gen_random_uuid(),
  tenant_id   uuid not null references public.tenants (id) on delete cascade,
  full_name   text not null check (length(btrim(full_name)) > 0),
  phone       text,
  email       text check (email ~ '^[^@\s]+@[^@\s]+$'),
  address     text,
  notes       text,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  unique (tenant_id, id)
);

create unique index customers_tenant_phone_key on public.customers (tenant_id, phone) where phone is not null;
create index customers_tenant_name_idx on public.customers (tenant_id, lower(full_name));

create table public.services (
  id           uuid primary key default gen_random_uuid(),
  tenant_id    uuid not null references public.tenants (id) on delete cascade,
  code         text not null check (code ~ '^[A-Z0-9-]{1,24}$'),
  name         text not null check (length(btrim(name)) > 0),
  description  text,
  unit         public.pricing_unit not null default 'item',
  is_active    boolean not null default true,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  unique (tenant_id, code),
  unique (tenant_id, id)
);

-- branch_id null: the list applies to every branch of the tenant.
create table public.price_lists (
  id          uuid primary key default gen_random_uuid(),
  tenant_id   uuid not null references public.tenants (id) on delete cascade,
  branch_id   uuid,
  name        text not null check (length(btrim(name)) > 0),
  currency    char(3) not null check (currency ~ '^[A-Z]{3}$'),
  valid_from  date not null default current_date,
  valid_to    date,
  is_default  boolean not null default false,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name),
  check (valid_to is null or valid_to >= valid_from),
  foreign key (tenant_id, branch_id) references public.branches (tenant_id, id) on delete cascade
);

-- At most one default price list per tenant.
create unique index price_lists_one_default_per_tenant on public.price_lists (tenant_id) where is_default;
create index price_lists_branch_idx on public.price_lists (tenant_id, branch_id);

create table public.price_list_items (
  id             uuid primary key default gen_random_uuid(),
  tenant_id      uuid not null,
  price_list_id  uuid not null,
  service_id     uuid not null,
  unit_price     numeric(12, 2) not null check (unit_price >= 0),
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  unique (price_list_id, service_id),
  foreign key (tenant_id, price_list_id) references public.price_lists (tenant_id, id) on delete cascade,
  foreign key (tenant_id, service_id) references public.services (tenant_id, id)
    deferrable initially deferred
);

create index price_list_items_service_idx on public.price_list_items (tenant_id, service_id);

create trigger customers_set_updated_at before update on public.customers
  for each row execute function public.set_updated_at();
create trigger services_set_updated_at before update on public.services
  for each row execute function public.set_updated_at();
create trigger price_lists_set_updated_at before update on public.price_lists
  for each row execute function public.set_updated_at();
create trigger price_list_items_set_updated_at before update on public.price_list_items
  for each row execute function public.set_updated_at();

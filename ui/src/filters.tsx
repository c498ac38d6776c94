// The task filters the Gallery and its History tab share: `Search prompts`
// (the q filter: whole words of the prompt), `Model` and `Type`.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Catalog } from './api';
import { capitalize } from './format';

interface FilterFieldsProps {
  catalog: Catalog;
  idPrefix: string; // keeps the fields' ids unique per page
  search: string; // the text in the box (the query follows it after a pause)
  model: string;
  type: string;
  onSearch: (v: string) => void;
  onModel: (v: string) => void;
  onType: (v: string) => void;
  children?: ComponentChildren; // fields shown before these (History's Status)
}

export function FilterFields({ catalog, idPrefix, search, model, type, onSearch, onModel, onType, children }: FilterFieldsProps) {
  const types = [...new Set(catalog.models.map((m) => m.type))];
  return (
    <>
      {children}
      <div class="field field-search">
        <label for={`${idPrefix}-search`}>Search prompts</label>
        <input
          id={`${idPrefix}-search`}
          type="search"
          aria-label="Search prompts"
          value={search}
          maxLength={200}
          placeholder="Words in the prompt"
          onInput={(e) => onSearch((e.currentTarget as HTMLInputElement).value)}
        />
      </div>
      <div class="field">
        <label for={`${idPrefix}-model`}>Model</label>
        <select id={`${idPrefix}-model`} aria-label="Model" value={model} onChange={(e) => onModel((e.currentTarget as HTMLSelectElement).value)}>
          <option value="">All models</option>
          {catalog.models.map((m) => (
            <option key={m.id} value={m.id}>
              {m.label}
            </option>
          ))}
        </select>
      </div>
      <div class="field">
        <label for={`${idPrefix}-type`}>Type</label>
        <select id={`${idPrefix}-type`} aria-label="Type" value={type} onChange={(e) => onType((e.currentTarget as HTMLSelectElement).value)}>
          <option value="">All types</option>
          {types.map((t) => (
            <option key={t} value={t}>
              {capitalize(t)}
            </option>
          ))}
        </select>
      </div>
    </>
  );
}

// useDebounced follows value after it has been still for ms.
export function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = window.setTimeout(() => setV(value), ms);
    return () => window.clearTimeout(t);
  }, [value, ms]);
  return v;
}

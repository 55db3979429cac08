import { InvalidArgumentError } from '@commander-js/extra-typings';

/** Option parsers every `shoal` command shares: a bad value is exit 2, naming the option. */

export const isWholeNumber = (value: string) =>
  /^\d+$/.test(value) && Number.isSafeInteger(Number(value));

export const wholeNumber = (value: string): number => {
  if (!isWholeNumber(value))
    throw new InvalidArgumentError('expected a non-negative whole number.');
  return Number(value);
};

export const nonEmpty = (value: string): string => {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty.');
  return value;
};

export const projectId = (value: string): number => {
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < 1)
    throw new InvalidArgumentError('expected a project id, a whole number from 1.');
  return Number(value);
};

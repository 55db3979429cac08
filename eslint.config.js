import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '.cache/**', '**/src/generated/**'] },
  js.configs.recommended,
  { files: ['**/*.mjs', '**/*.js'], languageOptions: { globals: globals.node } },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // DESIGN.md "Who owns what": services talk only through topics; what two share is a package
    // (as packages/regression-rules, packages/dedup-keys). deploy/entrypoint alone imports services.
    files: ['packages/*/src/**/*.ts', 'services/*/src/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^@shoal/(grouping|regression|dedup|ingest-gateway|lifecycle)(/|$)|/services/',
              message: 'a service is imported by no one: move what is shared into a package',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/test/**/*.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        {
          object: 'admin',
          property: 'createTopics',
          message:
            "use @shoal/testing's createTestTopics: kafkajs gives up when a loaded broker does not yet host a topic it just created",
        },
      ],
    },
  },
);

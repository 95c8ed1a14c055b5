/**
 * Every kind of owning system the inventory knows, one line each. A new kind is one file in this
 * folder exporting its definition (defineKind, ./kind.ts) and one line here.
 */
export { postgresKind } from './postgres';
export { redisKind } from './redis';
export { httpKind } from './http';
export { awsIamKind } from './aws-iam';
export { githubKind } from './github';
export { slackKind } from './slack';
export { mariadbKind } from './mariadb';
